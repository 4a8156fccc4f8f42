// The logged-in window: a narrow navigation bar, the room list, and the open chat.
import QtQuick 2.15
import QtQuick.Controls 2.15
import QtQuick.Layouts 1.15
import "."

Item {
    id: root

    RowLayout {
        anchors.fill: parent
        spacing: 0

        NavBar {
            Layout.fillHeight: true
            Layout.preferredWidth: 68
            onProfileRequested: profileDialog.open()
        }
        RoomList {
            Layout.fillHeight: true
            Layout.preferredWidth: 300
            onCreateRequested: createDialog.open()
        }
        Rectangle { Layout.fillHeight: true; Layout.preferredWidth: 1; color: Theme.line }
        Loader {
            Layout.fillHeight: true
            Layout.fillWidth: true
            sourceComponent: bridge.currentRoom.length ? chat : empty
        }
    }
    Component { id: chat; ChatView {} }
    Component {
        id: empty
        Rectangle {
            color: Theme.chatBackground
            Text {
                anchors.centerIn: parent
                text: bridge.rooms.count ? qsTr("Choose a chat on the left") : qsTr("Start a chat with the + button")
                color: "#5A6B7B"
                font.pixelSize: Theme.fontLarge
            }
        }
    }
    CreateRoomDialog { id: createDialog; objectName: "createDialog" }
    ProfileDialog { id: profileDialog; objectName: "profileDialog" }
}
