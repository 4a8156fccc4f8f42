// One message: a day separator when a new day starts, then the bubble. Others' messages sit
// on the left with picture and name (first of a run), your own on the right in yellow; the
// time and the number of members who have not read it yet sit beside the bubble.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

Item {
    id: root
    required property int seq
    required property string userId
    required property string senderName
    required property string avatarSource
    required property bool isOwn
    required property string chatType
    required property string text
    required property string imageSource
    required property int imageWidth
    required property int imageHeight
    required property string emoticonSource
    required property string timeText
    required property string dayText
    required property bool showDay
    required property bool showSender
    required property bool showTime
    required property int unreadCount

    signal imageClicked(string source)

    readonly property int sidePadding: 14
    readonly property int avatarRoom: isOwn ? 0 : Theme.avatar + 8
    readonly property real maxBubble: Math.max(120, (width - avatarRoom - 2 * sidePadding) * 0.68)
    readonly property real shownImageWidth: Math.min(imageWidth > 0 ? imageWidth : 200, 260)
    readonly property real shownImageHeight: imageWidth > 0 ? Math.min(shownImageWidth * imageHeight / imageWidth, 360) : 150

    implicitHeight: column.implicitHeight + (showSender || showDay ? 8 : 3)

    Column {
        id: column
        y: root.showSender || root.showDay ? 6 : 1
        width: parent.width
        spacing: 6

        Item {   // the day separator
            visible: root.showDay
            width: parent.width
            height: visible ? 40 : 0
            Rectangle {
                anchors.centerIn: parent
                width: dayLabel.implicitWidth + 28
                height: 24
                radius: 12
                color: "#33000000"
                Text {
                    id: dayLabel
                    anchors.centerIn: parent
                    text: "🗓 " + root.dayText
                    color: "white"
                    font.pixelSize: 12
                }
            }
        }

        Item {
            width: parent.width
            height: Math.max(body.height + (nameLabel.visible ? nameLabel.height + 4 : 0),
                             avatar.visible ? avatar.height : 0)

            Avatar {
                id: avatar
                visible: !root.isOwn && root.showSender
                x: root.sidePadding
                size: Theme.avatar
                source: root.avatarSource
                label: root.senderName
            }
            Text {
                id: nameLabel
                visible: !root.isOwn && root.showSender
                x: root.sidePadding + root.avatarRoom
                text: root.senderName
                color: "#4A5A6A"
                font.pixelSize: 12
            }
            Item {
                id: body
                y: nameLabel.visible ? nameLabel.height + 4 : 0
                x: root.isOwn ? root.width - root.sidePadding - width : root.sidePadding + root.avatarRoom
                width: meta.width + 6 + content.width
                height: Math.max(content.height, meta.height)

                Column {   // unread counter and time, beside the bubble's bottom
                    id: meta
                    x: root.isOwn ? 0 : content.width + 6
                    anchors.bottom: parent.bottom
                    spacing: 0
                    Text {
                        anchors.right: root.isOwn ? parent.right : undefined
                        visible: root.unreadCount > 0
                        text: root.unreadCount
                        color: Theme.counter
                        font.pixelSize: 11
                        font.bold: true
                    }
                    Text {
                        visible: root.showTime
                        text: root.timeText
                        color: "#556677"
                        font.pixelSize: 10
                    }
                }
                Item {
                    id: content
                    x: root.isOwn ? meta.width + 6 : 0
                    width: root.chatType === "image" ? root.shownImageWidth
                         : emoticon.visible ? 96 : bubble.width
                    height: root.chatType === "image" ? root.shownImageHeight
                          : emoticon.visible ? 96 : bubble.height

                    Rectangle {   // text bubble (also unknown types and emoticons we lack)
                        id: bubble
                        visible: root.chatType !== "image" && !emoticon.visible
                        color: root.isOwn ? Theme.ownBubble : Theme.otherBubble
                        radius: 10
                        width: Math.min(message.implicitWidth, root.maxBubble - 24) + 24
                        height: message.height + 18
                        Rectangle {   // the tail on the first bubble of a run
                            visible: root.showSender
                            width: 10; height: 10; rotation: 45
                            color: parent.color
                            x: root.isOwn ? parent.width - 6 : -4
                            y: 8
                            z: -1
                        }
                        Text {
                            id: message
                            x: 12; y: 9
                            width: Math.min(implicitWidth, root.maxBubble - 24)
                            text: root.chatType === "emoticon" ? ":" + root.text + ":" : root.text
                            textFormat: Text.PlainText
                            wrapMode: Text.Wrap
                            color: Theme.ink
                            font.pixelSize: Theme.fontNormal
                            lineHeight: 1.15
                        }
                    }
                    Image {
                        id: emoticon
                        visible: root.chatType === "emoticon" && root.emoticonSource.length > 0
                        anchors.fill: parent
                        source: visible ? root.emoticonSource : ""
                        sourceSize.width: 220
                        asynchronous: true
                        fillMode: Image.PreserveAspectFit
                    }
                    Rectangle {   // picture, click to enlarge
                        visible: root.chatType === "image"
                        anchors.fill: parent
                        radius: 10
                        color: "#DDE6EE"
                        border.color: "#22000000"
                        clip: true
                        Image {
                            anchors.fill: parent
                            source: parent.visible ? root.imageSource : ""
                            sourceSize.width: root.shownImageWidth * 2
                            asynchronous: true
                            fillMode: Image.PreserveAspectCrop
                        }
                        MouseArea {
                            anchors.fill: parent
                            cursorShape: Qt.PointingHandCursor
                            onClicked: root.imageClicked(root.imageSource)
                        }
                    }
                }
            }
        }
    }
}
