// One row of the room list.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

ItemDelegate {
    id: row
    required property string folder
    required property string name
    required property int memberCount
    required property string preview
    required property string timeText
    required property int unread
    required property string imageSource
    property bool selected: false

    implicitHeight: 72
    background: Rectangle { color: row.selected ? "#EBEBEB" : row.hovered ? Theme.selected : "white" }

    contentItem: RowLayout {
        spacing: 12
        Avatar {
            size: 48
            source: row.imageSource
            label: row.name
        }
        ColumnLayout {
            Layout.fillWidth: true
            spacing: 4
            RowLayout {
                Layout.fillWidth: true
                spacing: 6
                Text {
                    text: row.name
                    font.pixelSize: Theme.fontNormal
                    font.bold: true
                    color: Theme.ink
                    elide: Text.ElideRight
                    Layout.maximumWidth: implicitWidth
                    Layout.fillWidth: true
                }
                Text {
                    text: row.memberCount > 2 ? row.memberCount : ""
                    color: Theme.faint
                    font.pixelSize: 13
                }
                Item { Layout.fillWidth: true }
                Text {
                    text: row.timeText
                    color: Theme.faint
                    font.pixelSize: Theme.fontSmall
                }
            }
            RowLayout {
                Layout.fillWidth: true
                Text {
                    text: row.preview
                    color: Theme.subtle
                    font.pixelSize: 13
                    elide: Text.ElideRight
                    maximumLineCount: 1
                    Layout.fillWidth: true
                }
                Rectangle {
                    visible: row.unread > 0
                    color: Theme.badge
                    radius: height / 2
                    implicitHeight: 18
                    implicitWidth: Math.max(18, badge.implicitWidth + 10)
                    Text {
                        id: badge
                        anchors.centerIn: parent
                        text: row.unread > 999 ? "999+" : row.unread
                        color: "white"
                        font.pixelSize: Theme.fontSmall
                        font.bold: true
                    }
                }
            }
        }
    }
}
