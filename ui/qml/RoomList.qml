// The list of chats, most recent first, live: picture, name, last message, time, unread badge.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Rectangle {
    id: root
    color: Theme.panel
    signal createRequested()

    ColumnLayout {
        anchors.fill: parent
        spacing: 0

        RowLayout {
            Layout.fillWidth: true
            Layout.preferredHeight: 64
            Layout.leftMargin: 20
            Layout.rightMargin: 10
            Text {
                text: qsTr("Chats")
                font.pixelSize: 20
                font.bold: true
                color: Theme.ink
                Layout.fillWidth: true
            }
            ConnectionIndicator { connection: bridge.connectionState }
            IconButton {
                glyph: "＋"
                colour: Theme.ink
                tip: qsTr("New chat")
                objectName: "newChatButton"
                onClicked: root.createRequested()
            }
        }
        ListView {
            id: list
            objectName: "roomList"
            Layout.fillWidth: true
            Layout.fillHeight: true
            clip: true
            model: bridge.rooms
            boundsBehavior: Flickable.StopAtBounds
            ScrollBar.vertical: ScrollBar {}
            delegate: RoomDelegate {
                width: ListView.view.width
                selected: folder === bridge.currentRoom
                onClicked: bridge.openRoom(folder)
            }
            Text {
                anchors.centerIn: parent
                visible: list.count === 0
                text: qsTr("No chats yet")
                color: Theme.subtle
            }
        }
    }
}
